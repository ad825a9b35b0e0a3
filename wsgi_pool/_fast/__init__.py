"""The fast path: pieces that replace a piece of requests, urllib3 or http.client, for speed only.

Each piece does what the piece it replaces does, faster, and nothing else: no policy lives
here (deadlines, retries, limits and their errors live in the call's layers, and hold on
either path). Each is taken only while :mod:`~wsgi_pool._fast.seams` finds the public
extension points it skips untouched, so a mock, a recorder or a tracer patched into those
points sees every call. Each has a test that compares it with the piece it replaces.

=====================  ==========================================  ===============================
piece                  replaces                                    taken while intact
=====================  ==========================================  ===============================
``prepare``            ``Session.prepare_request`` and ``Request``  ``seams.PREPARE``
``session``            ``Session.send``                            ``seams.SESSION``
``pools``              ``HTTPAdapter.get_connection_with_tls_      ``seams.ADAPTER``
                       context`` and ``cert_verify``, per call
``exchange``           ``HTTPConnectionPool.urlopen``              ``seams.ADAPTER``, ``seams.URLOPEN``
``request``            ``http.client``'s ``putrequest`` ...         ``seams.REQUEST``
                       ``endheaders``, ``send``
``head``               ``http.client.parse_headers``               ``seams.HEAD``
``response``           ``HTTPAdapter.build_response``; the body    ``seams.RESPONSE``;
                       read by ``Response.content``                ``seams.BODY``
=====================  ==========================================  ===============================

These modules import only requests, urllib3 and the standard library (and ``_translate`` for
requests' own exceptions): every layer above may use them.
"""
