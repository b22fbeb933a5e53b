from corral.platform.cli.app import main

main()
