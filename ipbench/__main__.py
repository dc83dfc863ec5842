from ipbench.cli.main import main

main()
