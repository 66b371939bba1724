"""`python -m mxq ARGS...` runs the mxq CLI (mxq/_bin/mxq, see mxq._cli)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
