#!/usr/bin/env node
// The convergent-bench command. A file in the repo (not in dist/), so npm links it on a fresh install,
// before the prepare script has built dist/.
import '../dist/src/cli.js'
