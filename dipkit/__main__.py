import sys

from dipkit.cli import main

sys.exit(main())
