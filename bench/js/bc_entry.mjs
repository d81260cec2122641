// The bench's bundle of broadcast-channel (npm), built by ./build.sh bench into
// web/vendor/broadcast-channel/bc.js (esbuild, an IIFE): window.BroadcastChannelLib is the
// package's own BroadcastChannel and createLeaderElection, for web/lab/bc.html.
import { BroadcastChannel, createLeaderElection } from "broadcast-channel";

window.BroadcastChannelLib = { BroadcastChannel, createLeaderElection };
