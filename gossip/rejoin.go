package gossip

import (
	"context"
	"sync"
)

// maxJoinsInFlight bounds concurrent join attempts in a rejoin round.
const maxJoinsInFlight = 8

// maxRejoinsPerRound bounds the remembered addresses a rejoin round joins.
const maxRejoinsPerRound = 4

// joinAll joins addrs concurrently, recording each outcome for backoff.
func (n *Node) joinAll(ctx context.Context, addrs []string) (joined int, errs []error) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex // guards joined, errs
		sem = make(chan struct{}, maxJoinsInFlight)
	)
	for _, a := range addrs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return joined, append(errs, ctx.Err())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := n.join(ctx, a)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				joined++
			}
		}()
	}
	wg.Wait()
	return joined, errs
}
