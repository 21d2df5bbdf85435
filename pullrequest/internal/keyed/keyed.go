// Package keyed has a mutex per key, for hosts that serialise the changes
// made to one repository.
package keyed

import "sync"

// Mutex holds one lock per key; the zero value is ready to use. Locks are
// never freed: keys are repositories, a bounded set.
type Mutex struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// Lock locks key and returns its unlock.
func (m *Mutex) Lock(key string) (unlock func()) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]*sync.Mutex{}
	}
	l, ok := m.locks[key]
	if !ok {
		l = &sync.Mutex{}
		m.locks[key] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}
