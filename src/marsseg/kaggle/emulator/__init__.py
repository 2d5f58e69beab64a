"""A loopback Kaggle for tests and dry runs: `marsseg emulator [--port 7777] [--print-env]`.

The unmodified `kaggle` 2.2.4 client talks to it when routed as ../shared/kaggle-api.md describes
(KAGGLE_API_ENVIRONMENT=LOCALHOST, HTTP_PROXY=http_proxy=http://127.0.0.1:PORT, NO_PROXY=no_proxy empty), so
requests arrive in absolute form (`POST http://localhost/api/v1/<service>/<Method>`). It binds 127.0.0.1 only.

What it implements: SaveKernel, GetKernelSessionStatus, ListKernelSessionOutput (+ the output file GETs),
GetAcceleratorQuotaStatistics, StartSubmissionUpload (+ the blob PUT), CreateSubmission, GetSubmissionLimits,
ListSubmissions, GetLeaderboard, DownloadLeaderboard, ListDataFiles, DownloadDataFiles (302 to a .zip),
IntrospectToken.

It plays one competition profile (`--profile`, default $MARSSEG_PROFILE, else the real "mars" with 10022 test
images; `--print-env` hands the kit the same name): its synthetic data has that many test images, every upload
(a CSV, or a zip holding one) is validated against it and an invalid one is scored ERROR with the validator's
message as errorDescription. Without truth of that size a valid upload is COMPLETE with no public score, and
errorDescription and the CreateSubmission message say why. The GPU quota is `--gpu-quota-hours` (30) with
`--gpu-quota-used` (0) hours used, plus the wall time of the kernels pushed here with a GPU.

A pushed kernel really runs: the script is executed in a subprocess, as Kaggle would, with the competition data
under an input folder and an empty working folder handed to it through the kernel's one path switch
(MARSSEG_KAGGLE_INPUT / MARSSEG_KAGGLE_WORKING) and a small preset (MARSSEG_KERNEL_PRESET, default smoke); its status
follows the process (QUEUED → RUNNING → COMPLETE/ERROR) and the files it wrote are its output. Submissions are
scored against the synthetic truth (public score on a fixed half of the test images). The leaderboard is scripted:
other teams improve with every leaderboard call, a late team appears, and the user's best score is on it.

Faults (`--fault SPEC`, repeatable, or POST /_emulator/faults {"spec": SPEC}):
  METHOD:STATUS[:TIMES]        answer METHOD (e.g. SaveKernel, CreateSubmission, `*`, or blob-upload /
                               output-file / data-file for the plain transfers) with HTTP STATUS, TIMES times
                               (default 1)
  METHOD:STATUS:TIMES:after    carry the request out (the submission IS created, the blob IS stored), then
                               answer STATUS: what a blind retry turns into a duplicate
  METHOD:slow=SECONDS[:TIMES]  answer late
  kernel-error[:TIMES]         the next pushed kernels get a corrupt data file and end in ERROR

Modules, one job each: `faults` (fault specs), `kernel_run` (one pushed kernel executed in a subprocess), `state`
(kernels, submissions, the scripted leaderboard), `uploads` (unzipping, validating and scoring an upload), `quota`
(the accelerator quota answer), `handler` (the HTTP handler: each API method), `server` (make_server, serve,
print_env). Import from them directly: this package exports nothing, so importing it stays light.
"""
