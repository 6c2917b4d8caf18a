import sys

from hsanet.cli import main

sys.exit(main())
