"""The composition root: the command line and the runtime that builds adapters and stores
from settings. Nothing in the core (`leadflow.*` outside app/flows/integrations) imports it."""
