"""replyflow: Instagram Comment → DM automation through Meta's official Graph API."""
