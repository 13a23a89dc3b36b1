from rolecache.cli import main

raise SystemExit(main())
