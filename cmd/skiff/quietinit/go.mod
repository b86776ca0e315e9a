module early.skiff.io/quietinit

go 1.26
