// Command hello is what testutil's GoBuild test builds: a main package that compiles at once.
package main

import "fmt"

func main() { fmt.Println("hello") }
