from ganzhi.cli import main

main()
