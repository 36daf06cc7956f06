package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DefaultEngineSocket is the Docker Engine API's socket.
const DefaultEngineSocket = "/var/run/docker.sock"

// engineRetry is how long WatchNames waits before it asks the engine
// again after the events stream ended or the engine did not answer.
const engineRetry = 5 * time.Second

// engine is a minimal client of the Docker Engine API: the few
// unversioned GETs WatchNames needs, over the unix socket.
type engine struct {
	c *http.Client
}

func newEngine(socket string) *engine {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &engine{c: &http.Client{Transport: tr}}
}

func (e *engine) get(ctx context.Context, path string, out any) error {
	resp, err := e.do(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out)
}

func (e *engine) do(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("Docker Engine API GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("Docker Engine API GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

func filters(kv map[string][]string) string {
	b, _ := json.Marshal(kv)
	return url.QueryEscape(string(b))
}

// engineEvent is the part of a Docker event WatchNames reads.
type engineEvent struct {
	Type   string
	Action string
	Actor  struct {
		ID         string
		Attributes map[string]string
	}
}

// engineContainer is the part of GET /containers/ID/json WatchNames reads.
type engineContainer struct {
	ID              string `json:"Id"`
	Name            string
	State           struct{ Running bool }
	NetworkSettings struct {
		SandboxKey string
		Networks   map[string]struct {
			NetworkID         string
			EndpointID        string
			IPAddress         string
			GlobalIPv6Address string
			// Aliases: --network-alias and docker network connect
			// --alias; engines before API 1.45 add the short container ID.
			Aliases []string
		}
	}
}

// containerNames is the container's name, then its aliases on one
// network: without repeats and without the container ID (or a prefix of
// it) that older engines list among the aliases, which Docker's own DNS
// answers but is no name a user gave.
func containerNames(name, id string, aliases []string) []string {
	names := []string{name}
	for _, a := range aliases {
		if a == "" || slices.Contains(names, a) || len(a) >= 12 && strings.HasPrefix(id, a) {
			continue
		}
		names = append(names, a)
	}
	return names
}

// WatchNames keeps NAME.weave.local, and ALIAS.weave.local for each of
// its network aliases, registered for every running container on a
// network of driver, until ctx ends: it registers the containers already
// there, then follows the engine's network events (a container
// connecting). Leave removes the names. It starts over when the engine
// goes away and comes back; call it once the router's DNS is reconciled.
func (p *Plugin) WatchNames(ctx context.Context, socket, driver string) {
	e := newEngine(socket)
	defer e.c.CloseIdleConnections()
	for {
		err := p.watchOnce(ctx, e, driver)
		if ctx.Err() != nil {
			return
		}
		p.log.Debug("Docker events ended; asking again later", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(engineRetry):
		}
	}
}

// watchOnce subscribes to the events, then registers what is there (so
// nothing that connects in between is missed), then follows the stream.
func (p *Plugin) watchOnce(ctx context.Context, e *engine, driver string) error {
	resp, err := e.do(ctx, "/events?filters="+filters(map[string][]string{"type": {"network"}, "event": {"connect"}}))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := p.registerAll(ctx, e, driver); err != nil {
		p.log.Warn("cannot register the names of running Docker containers", "err", err)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev engineEvent
		if err := dec.Decode(&ev); err != nil {
			return err
		}
		if ev.Type != "network" || ev.Action != "connect" || ev.Actor.Attributes["type"] != driver {
			continue
		}
		if err := p.registerContainer(ctx, e, ev.Actor.Attributes["container"], ev.Actor.ID); err != nil {
			p.log.Warn("cannot register a Docker container's name", "container", short(ev.Actor.Attributes["container"]), "err", err)
		}
	}
}

func (p *Plugin) registerAll(ctx context.Context, e *engine, driver string) error {
	var nets []struct {
		ID         string `json:"Id"`
		Containers map[string]json.RawMessage
	}
	if err := e.get(ctx, "/networks?filters="+filters(map[string][]string{"driver": {driver}}), &nets); err != nil {
		return err
	}
	var errs []error
	for _, n := range nets {
		var full struct{ Containers map[string]json.RawMessage }
		if err := e.get(ctx, "/networks/"+n.ID, &full); err != nil {
			errs = append(errs, err)
			continue
		}
		for id := range full.Containers {
			if strings.HasPrefix(id, "ep-") { // an endpoint without a container
				continue
			}
			errs = append(errs, p.registerContainer(ctx, e, id, n.ID))
		}
	}
	return errors.Join(errs...)
}

// registerContainer registers the name of container id on network netID
// and answers DNS inside it.
func (p *Plugin) registerContainer(ctx context.Context, e *engine, id, netID string) error {
	var c engineContainer
	if err := e.get(ctx, "/containers/"+id+"/json", &c); err != nil {
		return err
	}
	if !c.State.Running {
		return nil
	}
	name := strings.TrimPrefix(c.Name, "/")
	for _, n := range c.NetworkSettings.Networks {
		if n.NetworkID != netID || n.EndpointID == "" {
			continue
		}
		var addrs []netip.Addr
		for _, s := range []string{n.IPAddress, n.GlobalIPv6Address} {
			if a, err := netip.ParseAddr(s); err == nil {
				addrs = append(addrs, a)
			}
		}
		names := containerNames(name, c.ID, n.Aliases)
		p.mu.Lock()
		if ep, ok := p.endpoints[n.EndpointID]; ok && ep.optName != "" && !slices.Contains(names, ep.optName) {
			names = append(names, ep.optName)
		}
		p.mu.Unlock()
		if err := p.r.RegisterNames(n.EndpointID, names, addrs); err != nil {
			return err
		}
		if c.NetworkSettings.SandboxKey != "" {
			if err := p.r.ServeDNS(n.EndpointID, c.NetworkSettings.SandboxKey); err != nil {
				p.log.Warn("cannot answer DNS inside the container", "container", name, "err", err)
			}
		}
		p.mu.Lock()
		if ep, ok := p.endpoints[n.EndpointID]; ok {
			ep.name = name
		}
		p.mu.Unlock()
		p.log.Info("Docker container registered in weaveDNS", "container", name, "aliases", names[1:], "endpoint", short(n.EndpointID), "addresses", addrs)
	}
	return nil
}
