import sys

from charrnn.cli import main

sys.exit(main())
