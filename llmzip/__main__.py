from llmzip.cli import main

main()
