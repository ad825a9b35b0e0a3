"""``python -m wsgi_pool explain ...``: the same as the ``wsgi-pool`` command."""

import sys

from ._explain import main

sys.exit(main())
