from proctrace_bcc.cli import main

main()
