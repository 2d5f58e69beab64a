from marsseg.cli import main

raise SystemExit(main())
