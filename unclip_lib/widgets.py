"""Live controls for the notebooks (ipywidgets): pick an emoji, describe it differently, slide theta.

    panel = text_diff_picker(load_unclip("emoji"), EmojiWorld())
    display(panel.widget)

The picker is the paper's text diff (section 3.3) on any image a world can render: the chosen
image is encoded once (z_i and its DDIM inversion x_T, cached per image), and each change of the
target caption or theta decodes slerp(z_i, z_d, theta) with that x_T, so theta = 0 is the image
itself. A caption that names nothing of the world is reported under the image, not raised.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TextDiffPicker:
    """The state and the redraw of one picker; `widget` is what the notebook displays."""

    pipe: object
    world: object
    resolution: int = 64
    seed: int = 0
    _latents: dict = field(default_factory=dict)

    def source_caption(self, concept: str) -> str:
        """The world's caption of the picked emoji ('red apple')."""
        return self.world.caption({"concept": concept})

    def latent(self, concept: str, style: str):
        """(image [1, 3, R, R], its pipe.encode latent), computed once per (concept, style)."""
        key = (self.world.concept(concept), self.world.check_style(style))
        if key not in self._latents:
            image = self.world.render([self.world.attributes(*key)], self.resolution)
            self._latents[key] = (image, self.pipe.encode(image))
        return self._latents[key]

    def edit(self, concept: str, style: str, to_caption: str, theta: float) -> torch.Tensor:
        """The picked emoji edited towards to_caption by theta: [1, 3, R, R] at the stack's
        output resolution. Raises ValueError for unknown names (the widget shows the message)."""
        from_caption = self.source_caption(concept)
        _, latent = self.latent(concept, style)
        if to_caption.strip().lower() == from_caption.lower():
            return self.pipe.decode(latent.z_i, x_T=latent.x_T, seed=self.seed)   # nothing to edit: the inversion
        return self.pipe.text_diff(latent=latent, from_caption=from_caption, to_caption=to_caption,
                                   thetas=[float(theta)], seed=self.seed)

    @property
    def widget(self):
        import ipywidgets as widgets
        import matplotlib.pyplot as plt
        from IPython.display import display

        from .viz import show_images

        names = sorted(self.world.concepts[h]["name"] for h in self.world.concepts)
        concept = widgets.Combobox(value="red apple", options=names, description="emoji", ensure_option=True)
        style = widgets.Dropdown(value=self.world.styles[0], options=list(self.world.styles), description="style")
        to_caption = widgets.Text(value="green apple", description="edit to", continuous_update=False)
        theta = widgets.FloatSlider(0.4, min=0, max=1, step=0.05, description="theta", continuous_update=False)
        out = widgets.Output()

        def redraw(*_):
            with out:
                out.clear_output(wait=True)
                try:
                    image = self.edit(concept.value, style.value, to_caption.value, theta.value)
                    source, _ = self.latent(concept.value, style.value)
                except ValueError as err:    # an unknown emoji, style or caption: say so, keep the panel
                    print(err)
                    return
                up = torch.nn.functional.interpolate(source, size=image.shape[-1], mode="bilinear",
                                                     align_corners=False).clamp(0, 1)
                fig = show_images(torch.cat([up, image]), [self.source_caption(concept.value),
                                                           f"-> {to_caption.value}, theta {theta.value:.2f}"],
                                  ncols=2, size=2.5)
                display(fig)          # inside the Output, then closed so it is not drawn twice
                plt.close(fig)

        for control in (concept, style, to_caption, theta):
            control.observe(redraw, names="value")
        redraw()
        return widgets.VBox([widgets.HBox([concept, style]), widgets.HBox([to_caption, theta]), out])


def text_diff_picker(pipe, world, resolution: int = 64, seed: int = 0) -> TextDiffPicker:
    """A text-diff picker for a stack and the world it was trained on (see the module's doc)."""
    return TextDiffPicker(pipe, world, resolution, seed)
