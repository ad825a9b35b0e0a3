"""A one-file Django project whose view calls an upstream through the request-scoped client.

    UPSTREAM_URL=http://127.0.0.1:8081 gunicorn -c deploy/gunicorn.conf.py examples.django_app:application

``wsgi_pool.django.ClientMiddleware`` gives each request its client as ``request.http``;
``WsgiPoolAppConfig`` in ``INSTALLED_APPS`` adds the system checks.
"""

from __future__ import annotations

import os

import django
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path

from examples.upstream_calls import call_upstream


def index(request: HttpRequest) -> HttpResponse:
    body = call_upstream(request.http.get, request.GET.get("tag", "-"))
    return HttpResponse(body, content_type="application/json")


urlpatterns = [path("", index)]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret"),
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["wsgi_pool.django.ClientMiddleware"],
        INSTALLED_APPS=["wsgi_pool.django.WsgiPoolAppConfig"],
        WSGI_POOL={"read_timeout": 10.0},
        USE_TZ=True,
    )
    django.setup()

application = get_wsgi_application()
