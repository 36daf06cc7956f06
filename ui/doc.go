// Package ui owns the live picture of the mesh: the page served at /ui on
// the metrics address, which draws the peers and the connections between
// them, and mesh.json, the model of the mesh the page polls. The model is
// built at request time from what the router already knows: its own
// connections and their traffic, and the rest of the topology from gossip.
// The page's HTML, script and style are embedded, so it needs nothing but
// the router to be served.
package ui
