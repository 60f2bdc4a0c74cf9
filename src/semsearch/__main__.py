from semsearch.cli import main

raise SystemExit(main())
