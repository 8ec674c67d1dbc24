package sqlite

// SetRestartFrames sets restartFrames for a test; restore puts it back.
func SetRestartFrames(n int64) (restore func()) {
	old := restartFrames.Swap(n)
	return func() { restartFrames.Store(old) }
}
