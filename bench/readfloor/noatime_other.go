//go:build !linux

package main

const oNoAtime = 0
