"""A Flask app whose view calls an upstream through the request-scoped client.

UPSTREAM_URL=http://127.0.0.1:8081 gunicorn -c deploy/gunicorn.conf.py examples.flask_app:app
"""

from __future__ import annotations

from flask import Flask, Response, request

from examples.upstream_calls import call_upstream
from wsgi_pool import PoolMiddleware, client_from

app = Flask(__name__)
app.wsgi_app = PoolMiddleware(app.wsgi_app)  # type: ignore[method-assign]  # Flask's documented way to add WSGI middleware


@app.get("/")
def index() -> Response:
    http = client_from(request.environ)
    body = call_upstream(http.get, request.args.get("tag", "-"))
    return Response(body, mimetype="application/json")
