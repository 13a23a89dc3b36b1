from rolecached.main import main

raise SystemExit(main())
