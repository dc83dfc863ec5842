from ipbench.cli import main

main()
