# Entry point of the bundled runner (see bundle.py): `python3 -I -c <bundle> [options]`.
import sys

import gvshim_runner

gvshim_runner.main(sys.argv[1:])
