import sys

from isp.cli import main

sys.exit(main())
