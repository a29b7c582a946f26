from featbench.cli import main

raise SystemExit(main())
