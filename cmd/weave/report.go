package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"weavemesh.dev/weave/api"
)

// Report is what weave report prints: everything the router tells, in one
// JSON document. Its top-level layout keeps Weave Net's field names
// (.Router.Name, .Router.Peers, .Router.Connections, .IPAM, .DNS), so
// scripts written against Weave Net's report find them; the fields inside
// are this router's API types (docs/api.md).
type Report struct {
	Router    ReportRouter    `json:"Router"`
	IPAM      *api.IPAMStatus `json:"IPAM,omitempty"`
	DNS       *api.DNSStatus  `json:"DNS,omitempty"`
	Endpoints []api.Endpoint  `json:"Endpoints"`
}

// ReportRouter is the router section of a Report.
type ReportRouter struct {
	Name        string           `json:"Name"`
	NickName    string           `json:"NickName"`
	Version     string           `json:"Version"`
	Encryption  bool             `json:"Encryption"`
	Status      api.Status       `json:"Status"`
	Peers       []api.Peer       `json:"Peers"`
	Connections []api.Connection `json:"Connections"`
}

func (a *app) reportCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "report [-f TEMPLATE]",
		Short: "Print everything the router knows as one JSON document, or through a Go template",
		Long: `Print the router's status, peers, connections, IP allocation, weaveDNS and
endpoints as one JSON document. The top level keeps Weave Net's names
(.Router.Name, .Router.Peers, .Router.Connections, .IPAM, .DNS). With -f,
the report goes through a Go template instead; the function json prints a
value as JSON.`,
		Example: `  weave report
  weave report -f '{{.Router.Name}}'
  weave report -f '{{range .Router.Connections}}{{.Nickname}} {{.State}} {{.Datapath}}{{"\n"}}{{end}}'
  weave report -f '{{json .IPAM.Peers}}'`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var tmpl *template.Template
			if format != "" {
				t, err := template.New("report").Funcs(template.FuncMap{"json": toJSON}).Parse(format)
				if err != nil {
					return usagef("-f: %v", err)
				}
				tmpl = t
			}
			c := a.client()
			defer c.CloseIdleConnections()
			r, err := buildReport(cmd.Context(), c)
			if err != nil {
				return err
			}
			if tmpl == nil {
				return writeJSON(a.stdout, r)
			}
			if err := tmpl.Execute(a.stdout, r); err != nil {
				return fmt.Errorf("-f: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Go template to print the report through")
	return cmd
}

// buildReport asks the router for each part. The router's own parts must
// answer; IP allocation and weaveDNS are left out when they are off.
func buildReport(ctx context.Context, c *api.Client) (Report, error) {
	var r Report
	st, err := c.Status(ctx)
	if err != nil {
		return r, err
	}
	r.Router = ReportRouter{Name: st.Name, NickName: st.Nickname, Version: st.Version, Encryption: st.Encryption, Status: st}
	if r.Router.Peers, err = c.Peers(ctx); err != nil {
		return r, err
	}
	if r.Router.Connections, err = c.Connections(ctx); err != nil {
		return r, err
	}
	if r.Endpoints, err = c.Endpoints(ctx); err != nil {
		return r, err
	}
	if r.Router.Peers == nil {
		r.Router.Peers = []api.Peer{}
	}
	if r.Router.Connections == nil {
		r.Router.Connections = []api.Connection{}
	}
	if r.Endpoints == nil {
		r.Endpoints = []api.Endpoint{}
	}
	if ip, err := c.IPAMStatus(ctx); err == nil {
		r.IPAM = &ip
	} else if !absent(err) {
		return r, err
	}
	if d, err := c.DNSStatus(ctx); err == nil {
		r.DNS = &d
	} else if !absent(err) {
		return r, err
	}
	return r, nil
}

// absent reports whether err says a section is not served: the feature
// is off (404, or 409 from weaveDNS turned off).
func absent(err error) bool {
	var se *api.StatusError
	return errors.As(err, &se) && (se.Code == 404 || se.Code == 409 || se.Code == 503)
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return strings.TrimSpace(string(b)), err
}
