module github.com/monoquant/monoquant

go 1.26.8

require github.com/x448/float16 v0.8.4

require golang.org/x/sys v0.50.0

require github.com/nlpodyssey/gopickle v0.2.0
