// Package dashboard tests trellisd's web dashboard in a real browser: a
// local mesh (network namespaces, interception, real trellisd and
// sidecars) runs the bill-service seed, and headless Chromium, driven by
// playwright-core (internal/dashboard/web/e2e/dashboard.mjs), checks the
// service graph and the measured 90/10 split. Needs root, /usr/bin/chromium
// and the npm packages of internal/dashboard/web (scripts/setup.sh installs
// all three); screenshots go to $TRELLIS_ARTIFACTS, else artifacts/ here.
package dashboard
