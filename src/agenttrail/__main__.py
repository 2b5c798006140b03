from agenttrail.cli.main import main

main()
