import sys

from mafer.cli import main

sys.exit(main())
