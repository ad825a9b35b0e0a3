"""The fast path: pieces that replace a piece of requests, urllib3 or http.client, for speed only.

Each piece does what the piece it replaces does, faster, and nothing else: no policy lives
here (deadlines, retries, limits and their errors live in the call's layers, and hold on
either path). Each is taken only while :mod:`~wsgi_pool._fast.seams` finds the public
extension points it skips untouched, so a mock, a recorder or a tracer patched into those
points sees every call (a client's call judges every group once, at its start). Each has a
test that compares it with the piece it replaces.

=====================  ==========================================  ===============================
piece                  replaces                                    taken while intact
=====================  ==========================================  ===============================
``prepare``            ``Session.prepare_request`` and ``Request``  ``seams.PREPARE``
``session``            ``Session.send``                            ``seams.SESSION``
``pools``              ``HTTPAdapter.get_connection_with_tls_      ``seams.ADAPTER``
                       context`` and ``cert_verify``, per call
``exchange``           ``HTTPConnectionPool.urlopen``              ``seams.TRY`` (``ADAPTER``,
                                                                   ``URLOPEN``)
``request``            ``http.client``'s ``putrequest`` ...         ``seams.REQUEST_WRITE``
                       ``endheaders``, ``send``
``head``               ``http.client.parse_headers``               ``seams.HEAD``
``whole``              urllib3's ``_make_request`` reading an      ``seams.WHOLE``
                       answer: http.client's and urllib3's
                       responses, for a plain answer
``headers``            ``CaseInsensitiveDict``'s ``in`` and ``get``  (a subclass: always)
``response``           ``HTTPAdapter.build_response``; the body    ``seams.RESPONSE``;
                       read by ``Response.content``                ``seams.BODY``
=====================  ==========================================  ===============================

These modules import only requests, urllib3 and the standard library (and ``_translate`` for
requests' own exceptions): every layer above may use them.
"""
