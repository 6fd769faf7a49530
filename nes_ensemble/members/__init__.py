"""The population's members and their manager: the networks (``population``, trained by ``training``,
held by ``ensemble``), the Gaussian-process members (``kernel_members``), the generations that fork and
merge each kind (``evolution``, ``kernel_evolution``), the share of proposals each kind makes
(``allocation``), and the targets they learn (``targets``)."""
