package inspect

// fillAdapter fills the adapter-level fields of a single-file or directory input.
func (s *Summary) fillAdapter(path string, l *layout, opts Options) error {
	return nil
}
