from marsseg.cli.main import main

raise SystemExit(main())
