package api

// DockerPluginStatus is GET /status/docker: the Docker plugin's socket
// and driver name, both empty when the router does not serve the plugin
// (--no-plugin, no Docker plugin directory, or the socket was taken).
type DockerPluginStatus struct {
	Socket string `json:"socket,omitempty"`
	Driver string `json:"driver,omitempty"`
	// Names is set when the containers' names are kept in weaveDNS
	// (weaveDNS is on).
	Names bool `json:"names"`
}
