from rolecached.service import main

raise SystemExit(main())
