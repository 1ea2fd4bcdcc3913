from pnr.cli import main

main()
