"""The jobs service: start, retry, cancel, bulk actions and history, with the credit rules;
one implementation for user routes, admin routes and `wf-admin`."""
