import sys

from slimkit.cli.main import main

sys.exit(main())
