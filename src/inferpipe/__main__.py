import sys

from inferpipe.cli import main

sys.exit(main())
