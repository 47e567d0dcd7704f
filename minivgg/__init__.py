"""minivgg: VGG-19 and Gatys, Ecker & Bethge's neural style transfer on miniautograd."""
