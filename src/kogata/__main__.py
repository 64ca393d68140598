from kogata.cli import main

main()
