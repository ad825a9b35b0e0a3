"""A one-file Django project whose view calls an upstream through the request-scoped client.

    UPSTREAM_URL=http://127.0.0.1:8081 gunicorn -c deploy/gunicorn.conf.py examples.django_app:application

Django's ``request.META`` is the WSGI environ, so ``client_from(request.META)`` finds the client.
"""

from __future__ import annotations

import os

import django
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path

from examples.upstream_calls import call_upstream
from wsgi_pool import PoolMiddleware, client_from


def index(request: HttpRequest) -> HttpResponse:
    http = client_from(request.META)
    body = call_upstream(http.get, request.GET.get("tag", "-"))
    return HttpResponse(body, content_type="application/json")


urlpatterns = [path("", index)]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret"),
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()

application = PoolMiddleware(get_wsgi_application())
