from simstack.cli import main

raise SystemExit(main())
