from rtcal.cli import main

raise SystemExit(main())
