"""``python -m leptonic.compat app.py [ARGS]``: run a classic photon file as a script.

The file runs as ``__main__`` with the ``leptonai`` alias installed, so its
``if __name__ == "__main__": MyPhoton().launch()`` serves it with leptonic.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    from leptonic.photon.alias import install

    script = Path(args[0]).resolve()
    install()
    sys.argv = [str(script), *args[1:]]
    sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
