"""A Flask app whose view calls an upstream through the current request's client.

UPSTREAM_URL=http://127.0.0.1:8081 gunicorn -c deploy/gunicorn.conf.py examples.flask_app:app
"""

from __future__ import annotations

from flask import Flask, Response, request

from examples.upstream_calls import call_upstream
from wsgi_pool.flask import WsgiPool, http

app = Flask(__name__)
app.config["WSGI_POOL"] = {"read_timeout": 10.0}
WsgiPool(app)


@app.get("/")
def index() -> Response:
    body = call_upstream(http.get, request.args.get("tag", "-"))
    return Response(body, mimetype="application/json")
