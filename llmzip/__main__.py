from llmzip.cli.main import main

main()
